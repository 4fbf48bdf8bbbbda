"""The heartbeat service: pings that patch the DataFlows that are due."""
