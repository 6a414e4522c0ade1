"""Tasks keep results in the run's persistent data store: set, push, extend and get.

first sets an int, a value under a dot-notation key and a numpy image (replaced by a
larger one), and pushes onto a list. second reads the number and the image back,
stores ten times the number, reads a missing key with a default and starts the list
'filenames'. third_a and third_b, running in parallel after second, push a file name,
a nested list and extend the list with two more names.
"""

import numpy as np

from triggerd.flow import Dag, PythonTask


def first(data, store, signal, context):
    store.set("number", 5)
    store.set("buffer.observable", 20)
    store.push("sample.spectra", 7)
    store.set("image", np.ones((10, 10)))
    store.set("image", np.ones((100, 100)))


def second(data, store, signal, context):
    number = store.get("number")
    image = store.get("image")
    print(f"number {number}, image of shape {image.shape}")
    store.set("image_shape", list(image.shape))
    store.set("image_sum", float(image.sum()))
    store.set("number", number * 10)
    store.set("observable", store.get("buffer.observable"))
    store.set("missing", store.get("no.such.key", "fallback"))
    store.set("missing_none", store.get("no_such_key"))
    store.push("filenames", "file_a.spec")


def third_a(data, store, signal, context):
    store.push("filenames", "file_b.spec")


def third_b(data, store, signal, context):
    store.push("filenames", ["nested_a", "nested_b"])
    store.extend("filenames", ["file_c.spec", "file_d.spec"])


first_task = PythonTask("first", first)
second_task = PythonTask("second", second)
third_a_task = PythonTask("third_a", third_a)
third_b_task = PythonTask("third_b", third_b)

main_dag = Dag("main_dag")
main_dag.define({first_task: [second_task], second_task: [third_a_task, third_b_task]})
