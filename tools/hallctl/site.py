"""What `hallctl provision` writes: site.json (identity, key, broker, Wi-Fi)
and, for TLS to the broker, the CA the device checks the broker against.

Secrets (the device key, the Wi-Fi and broker passwords) may come from a
file, standard input or the environment, so they need not stand in argv,
where `ps` shows them to every user of the machine.
"""
import os
import sys

from edge_agent.terminal import printable
from tools.hallctl.device import HallctlError

CA_FILE = "ca.der"          # on the board's flash, beside site.json
TLS_PORT = 8883
# (site.json field, option, environment variable)
SECRETS = (("key", "key", "QL_DEVICE_KEY"),
           ("wifi_password", "wifi-password", "QL_WIFI_PASSWORD"),
           ("password", "password", "QL_BROKER_PASSWORD"))


def secret(args, field, option, env, stdin=None):
    """The secret from --OPTION, --OPTION-file (- = standard input) or $ENV; None if none."""
    value, path = getattr(args, field), getattr(args, field + "_file")
    if value is not None and path is not None:
        raise HallctlError("give --%s or --%s-file, not both" % (option, option))
    if path is not None:
        try:
            if path == "-":
                text = (stdin or sys.stdin).readline()
            else:
                with open(path) as f:
                    text = f.readline()
        except (OSError, UnicodeDecodeError) as e:
            raise HallctlError("cannot read --%s-file %s: %s" % (option, path, getattr(e, "strerror", None) or e))
        # The line's end is not part of a password; spaces inside it are.
        return text.rstrip("\r\n")
    if value is not None:
        return value
    return os.environ.get(env)


def read_ca(path):
    """The hall's CA certificate (PEM) as DER, the form MicroPython's ssl reads
    on every port (PEM parsing is not in every build), and smaller on flash."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    try:
        with open(path, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        raise HallctlError("cannot read --ca %s: %s" % (path, e.strerror or e))
    except ValueError:
        raise HallctlError("--ca %s is not a PEM certificate (-----BEGIN CERTIFICATE-----)" % path)
    if len(certs) != 1:
        raise HallctlError("--ca %s holds %d certificates: give the hall's CA alone" % (path, len(certs)))
    return certs[0].public_bytes(Encoding.DER)


def site_config(args, stdin=None):
    """site.json for the board, from the parsed `provision` arguments."""
    if sum(getattr(args, f + "_file") == "-" for f, _, _ in SECRETS) > 1:
        raise HallctlError("only one secret can come from standard input (-)")
    key_hex, wifi_password, password = (secret(args, f, o, e, stdin) for f, o, e in SECRETS)
    if key_hex is None:
        raise HallctlError("no device key: give --key-file FILE (- for standard input), set QL_DEVICE_KEY, "
                           "or --key HEX (as printed by `edge-agent devices add`)")
    try:
        key = bytes.fromhex(key_hex.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise HallctlError("the device key must be 64 hex characters (as printed by `edge-agent devices add`)")
    window = args.window
    if not 0 < len(window) <= 64 or printable(window) != window:
        # It goes into every event until the agent's config arrives: the protocol's rules.
        raise HallctlError("--window %s: 1-64 characters, no control characters" % printable(window))
    host, _, port = args.broker.partition(":")
    try:
        port = int(port or (TLS_PORT if args.ca else 1883))
    except ValueError:
        raise HallctlError("--broker %r: HOST or HOST:PORT" % args.broker)
    site = {"hall": args.hall, "device": args.device, "key": key.hex(),
            "broker_host": host, "broker_port": port, "window": args.window,
            "ssid": args.wifi_ssid, "wifi_password": wifi_password or ""}
    if args.ca:
        # The device checks the broker's certificate against this CA and this name.
        site.update(tls_ca=CA_FILE, tls_name=args.broker_name or host)
    # Same login as `edge-agent broker-config` writes: the device id, and a
    # password derived from the key, so the technician carries one secret.
    from edge_agent.registry import mqtt_password
    site.update(username=args.user or args.device,
                password=password if password is not None else mqtt_password(key))
    return site
