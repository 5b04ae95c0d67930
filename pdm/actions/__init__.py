"""What the appliance does about alarms: a relay (Modbus TCP coil, GPIO, or a log line) and webhooks."""
