"""Charts for reports: pure functions, data in, PNG bytes out (matplotlib object API, Agg).

Knows nothing of Telegram, MQTT, the database or ``bot/``. Rendering is CPU work (tens of
milliseconds): callers run ``render_*`` in an executor, e.g.
``await loop.run_in_executor(None, functools.partial(render_daily_ratings, days, title, labels))``.
``python -m charts.gallery OUTDIR`` draws every chart from a synthetic month (the README's
pictures); ``python -m charts.gallery --bench 15`` times them.
"""

from charts.kpi import (
    MIN_CONVERSATIONS,
    MIN_RATINGS,
    ComplianceDay,
    ComplianceRow,
    DailyCounts,
    Heatmap,
    ParetoBar,
    Ranking,
    ReasonCount,
    StaffRow,
    comment_compliance_figure,
    daily_ratings_figure,
    heatmap_span,
    is_significant,
    like_index,
    negatives_heatmap_figure,
    pareto,
    rank_rows,
    reasons_pareto_figure,
    render_comment_compliance,
    render_daily_ratings,
    render_negatives_heatmap,
    render_reasons_pareto,
    render_sales_compliance,
    render_staff_ranking,
    sales_compliance_figure,
    staff_ranking_figure,
)
from charts.style import LABELS_EN, LABELS_RU, SIZE, Labels, format_period, to_png

__all__ = [
    "LABELS_EN",
    "LABELS_RU",
    "MIN_CONVERSATIONS",
    "MIN_RATINGS",
    "SIZE",
    "ComplianceDay",
    "ComplianceRow",
    "DailyCounts",
    "Heatmap",
    "Labels",
    "ParetoBar",
    "Ranking",
    "ReasonCount",
    "StaffRow",
    "comment_compliance_figure",
    "daily_ratings_figure",
    "format_period",
    "heatmap_span",
    "is_significant",
    "like_index",
    "negatives_heatmap_figure",
    "pareto",
    "rank_rows",
    "reasons_pareto_figure",
    "render_comment_compliance",
    "render_daily_ratings",
    "render_negatives_heatmap",
    "render_reasons_pareto",
    "render_sales_compliance",
    "render_staff_ranking",
    "sales_compliance_figure",
    "staff_ranking_figure",
    "to_png",
]
