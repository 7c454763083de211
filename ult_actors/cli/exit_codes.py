"""Exit codes of every ``ult`` command, in one place so scripts can rely on them."""

EXIT_OK = 0
#: An order was rejected, a request failed, or the service's tree gave up.
EXIT_FAILED = 1
EXIT_USAGE = 2
#: A configuration or environment a restart cannot fix (corrupt or locked journal,
#: read-only state directory, something else at the socket path). The unit file's
#: ``RestartPreventExitStatus=2`` keeps systemd from retrying it.
EXIT_CONFIG = EXIT_USAGE
#: No service answered on the socket.
EXIT_UNREACHABLE = 3
