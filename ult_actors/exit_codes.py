"""Exit codes of every ``ult`` command, in one place so scripts can rely on them."""

EXIT_OK = 0
#: An order was rejected, a request failed, or the service's tree gave up.
EXIT_FAILED = 1
EXIT_USAGE = 2
#: No service answered on the socket.
EXIT_UNREACHABLE = 3
