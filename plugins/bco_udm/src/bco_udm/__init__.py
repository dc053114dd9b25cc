"""BCO with Underlying Distribution Matching, an objective plug-in of bco-platform.

Registered as ``bco_udm`` in the entry-point group ``bco_platform.objectives``.
"""

from bco_udm.objective import BCOUDMConfig, BCOUDMObjective

__all__ = ["BCOUDMConfig", "BCOUDMObjective"]
