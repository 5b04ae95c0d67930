"""Tools that run the appliance from outside: ``pdm-edge send`` (a recording to a stream
input, as a DAQ would), the benchmarks (``pdm-edge bench``), the soak test (``pdm-edge soak``),
the diagnosis sweep (``python -m pdm.tools.diagnosis_sweep``), and the real peers the soak
and the test suite run against — a Modbus TCP relay, a webhook receiver."""
