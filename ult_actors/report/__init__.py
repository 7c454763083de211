"""Transaction-cost reports: what each order cost (fees, slippage against its arrival
price, implementation shortfall, time to fill) and those figures by symbol, broker or day.

``build_report`` computes a ``CostReport`` from a journal's orders and fills;
``render`` turns one into a table, JSON or CSV, ``html`` into one self-contained page.
"""

from ult_actors.report.aggregate import build_report
from ult_actors.report.costs import order_cost

__all__ = ["build_report", "order_cost"]
