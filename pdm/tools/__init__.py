"""Tools that run the appliance from outside: the soak test (``pdm-edge soak``) and the real
peers it (and the test suite) runs against — a Modbus TCP relay, a webhook receiver."""
