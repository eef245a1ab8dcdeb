"""How evaluations are reported (``report``): one interval, one table writer, one plot helper for every task."""
