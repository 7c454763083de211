"""Active/standby instances sharing one PostgreSQL journal: the lease with its fencing epoch
(``lease``), an instance's role (``member``), its socket in either role (``gateway``) and
``ult serve`` as a cluster instance (``serve``)."""
