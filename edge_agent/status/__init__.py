"""The hall's status: snapshot.py reads the numbers from the store;
alarms.py turns them into the tower light's state; text.py renders them for
a person and for Prometheus."""
from edge_agent.status.alarms import DEVICE_ALARMS, LIGHT_ORDER, device_alarm, hall_state
from edge_agent.status.snapshot import hall_screen, open_service, snapshot
from edge_agent.status.text import human, metrics

__all__ = ["DEVICE_ALARMS", "LIGHT_ORDER", "device_alarm", "hall_state", "hall_screen", "open_service",
           "snapshot", "human", "metrics"]
