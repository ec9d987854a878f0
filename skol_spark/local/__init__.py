"""Local-master conveniences, behind one seam (``skol_spark.local.LocalMaster``)."""
