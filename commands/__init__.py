"""Everything that touches or models an RRAS server: scripts, PSRP runner, snapshot, diagnosis, fixes, lab."""
