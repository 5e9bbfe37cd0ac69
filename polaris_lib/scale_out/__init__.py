"""Beyond one consumer GPU: the memory planner, cost estimates, and the verl export."""

from polaris_lib.scale_out.cost import hardware, scale_table
from polaris_lib.scale_out.plan import as_p_flags, fitting_overrides, plan_run
from polaris_lib.scale_out.verl_export import export_verl
