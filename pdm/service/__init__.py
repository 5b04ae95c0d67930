"""The appliance service's control and health API and its Prometheus metrics."""
