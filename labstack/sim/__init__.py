"""The virtual lab: a physics simulator of chip, readout chain and cryostat. Knows nothing of SCPI or calibrations."""
