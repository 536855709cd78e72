"""A stand-in for `network` on the unix port: one station interface whose
association the test completes by calling `associate()`."""
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 3
COUNTRY = []
CONNECTS = []
CONFIG = {}


class WLAN:
    IF_STA = 0
    IF_AP = 1
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    _sta = None

    def __new__(cls, interface=0):
        if interface != WLAN.IF_STA:
            raise ValueError("only the station interface is simulated")
        if WLAN._sta is None:
            WLAN._sta = object.__new__(cls)
            WLAN._sta._active = False
            WLAN._sta._status = STAT_IDLE
        return WLAN._sta

    def __init__(self, interface=0):
        pass

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid, key):
        if not self._active:
            raise OSError("WLAN not active")
        if self._status == STAT_CONNECTING:
            raise OSError("Wifi Internal State Error")  # what the esp32 port says
        CONNECTS.append((ssid, key))
        self._status = STAT_CONNECTING

    def config(self, **settings):
        for key, value in settings.items():
            if key != "pm" or value not in (WLAN.PM_NONE, WLAN.PM_PERFORMANCE, WLAN.PM_POWERSAVE):
                raise ValueError("unknown config param")
            CONFIG[key] = value

    def isconnected(self):
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        if param == "rssi":
            if self._status != STAT_GOT_IP:
                raise OSError("not connected")
            return -61
        if param is not None:
            raise ValueError("unknown status param")
        return self._status


def associate():
    WLAN._sta._status = STAT_GOT_IP


def country(code=None):
    if code is None:
        return COUNTRY[-1] if COUNTRY else "XX"
    COUNTRY.append(code)
