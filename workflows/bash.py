"""BashTask runs commands, counting output lines as they come and reading captured output.

pick_names puts a few file names into the data, one with a space and one with a
semicolon. list_names runs printf with the names as separate arguments (a list, never
formatted into a shell string), counts stdout lines in callback_stdout, captures stdout
and, in callback_end, reads the captured file and stores the lines and the exit code.
count_names hands the count to a shell command through its environment. Results are
in the store under 'stdout_lines', 'captured', 'returncode' and 'env_echo'.
"""

from triggerd.flow import BashTask, Dag, PythonTask


def pick_names(data, store, signal, context):
    data["names"] = ["scan 1.h5", "scan_2.h5", "odd;name.h5"]


def names_command(data, store):
    return ["printf", "%s\\n", *data["names"]]


def count_line(line, data, store, signal, context):
    data["line_count"] = data["line_count"] + 1 if "line_count" in data else 1
    print(f"line {data['line_count']}: {line}", end="")


def read_captured(returncode, stdout_file, stderr_file, data, store, signal, context):
    captured = stdout_file.read().decode().splitlines()
    store.set("stdout_lines", data["line_count"])
    store.set("captured", captured)
    store.set("returncode", returncode)


def count_env(data, store):
    return {"LINE_COUNT": str(data["line_count"])}


def echo_line(line, data, store, signal, context):
    store.set("env_echo", line.strip())


pick_task = PythonTask("pick_names", pick_names)
list_task = BashTask(
    "list_names",
    names_command,
    capture_stdout=True,
    callback_stdout=count_line,
    callback_end=read_captured,
)
count_task = BashTask(
    "count_names",
    'echo "counted $LINE_COUNT lines"',
    env=count_env,
    callback_stdout=echo_line,
)

main_dag = Dag("main_dag")
main_dag.define({pick_task: list_task, list_task: count_task})
