"""The simple example runs end to end on the local executor."""


def test_simple_passes_value_downstream(run_workflow):
    """put_value's 5 reaches show_value, which stores it; both tasks succeed."""
    out = run_workflow("simple")
    assert out.status == "succeeded"
    assert out.states("main_dag:1") == {"put_value": "succeeded", "show_value": "succeeded"}
    assert out.store["data"]["value"] == 5
    assert set(out.store["meta"]["log"]["main_dag:1"]["tasks"]) == {"put_value", "show_value"}
