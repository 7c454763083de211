"""Active/standby instances sharing one PostgreSQL journal: the lease with its fencing epoch
(``lease``), an instance's role (``member``), no send to a venue once the lease may have run
out (``fencing``), its socket in either role (``gateway``) and ``ult serve`` as a cluster
instance (``serve``)."""
