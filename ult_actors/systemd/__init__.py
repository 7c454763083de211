"""What the service says to systemd: the sd_notify protocol and the watchdog that speaks it."""
