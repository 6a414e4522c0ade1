"""Watch an EPICS PV and start a dag when its value comes within a range.

lightflow-epics' example workflow, run as it is but for its imports
(``lightflow.models``/``lightflow.tasks``/``lightflow_epics`` become ``triggerd.flow`` and
``triggerd.tasks``): PvTriggerTask calls ``pv_callback`` with each new value of the PV
named by the ``pvname`` argument, oldest first; a value within 3 ± 2 starts
``pv_action_dag`` with the PV's name and value. The workflow runs until it is stopped
(``triggerctl stop RUN``).
"""

import math

from triggerd.flow import Dag, Option, Parameters, PythonTask
from triggerd.tasks import PvTriggerTask

# the workflow requires the PV name to be supplied as an argument.
parameters = Parameters([Option('pvname', help='The PV to monitor', type=str)])


# the callback function for the startup task.
def startup(data, store, signal, context):
    print('Starting the PV monitoring...')


# the callback function that is called when the PV changes. If the new value is
# in the range 3+-2, the name and value of the PV is stored in the data, the dag
# 'pv_action_dag' is started and the data is supplied to this dag.
def pv_callback(data, store, signal, context, pvname=None, value=None, **kwargs):
    print(f'Checking PV {pvname} with value {value}')
    if math.fabs(value - 3.0) < 2.0:
        data['pv_name'] = pvname
        data['pv_value'] = value

        signal.start_dag('pv_action_dag', data=data)
        return data


# the callback function that prints the new PV value after it got changed.
def pv_printout(data, store, signal, context):
    print('PV {} has value: {}'.format(data['pv_name'], data['pv_value']))


# set up the PV monitoring dag.
pv_monitor_dag = Dag('pv_monitor_dag')

startup_task = PythonTask(name='startup_task', callback=startup)

monitor_task = PvTriggerTask(
    name='monitor_task',
    pv_name=lambda data, data_store: data_store.get('pvname'),
    callback=pv_callback,
    event_trigger_time=0.1,
    stop_polling_rate=2,
    skip_initial_callback=True,
)

pv_monitor_dag.define({startup_task: monitor_task})


# set up the PV action dag.
pv_action_dag = Dag('pv_action_dag', autostart=False)

printout_task = PythonTask(name='printout_task', callback=pv_printout)

pv_action_dag.define({printout_task: None})
