"""The statistics of a study (pure, no torch), one subject a module: shares and accuracy with
intervals (`proportions`), paired comparisons (`paired`), agreement between raters
(`agreement`), how well a judge separates known verdicts (`separation`), answer profiles
(`breakdowns`), rates calibrated to people (`calibrated`) and labelling budgets (`planning`);
`common` holds the shapes and resampling helpers they share."""

from vlmalign.stats.agreement import (
    JudgeAgreement,
    Level,
    alignment_bias_interval,
    cohen_kappa,
    judge_vs_human,
    kappa_interval,
    krippendorff_alpha,
    majority_label,
)
from vlmalign.stats.breakdowns import (
    STANCES,
    ItemConsistency,
    item_consistency,
    unclear_rate,
    yes_rate,
)
from vlmalign.stats.calibrated import (
    CalibratedDifference,
    CalibratedRate,
    prediction_powered_difference,
    prediction_powered_rate,
)
from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    Outcome,
    OutcomesByItem,
)
from vlmalign.stats.paired import (
    BootstrapComparison,
    ComparisonMethod,
    McNemarResult,
    PairedComparison,
    compare_paired,
    holm_adjust,
    mcnemar_exact,
    newcombe_paired_interval,
    paired_bootstrap,
)
from vlmalign.stats.proportions import (
    AccuracyEstimate,
    AccuracyMethod,
    Proportion,
    accuracy_estimate,
    cluster_bootstrap_interval,
    proportion,
    wilson_interval,
)
from vlmalign.stats.separation import (
    BalancedAccuracy,
    Known,
    balanced_accuracy_estimate,
    roc_auc,
)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "STANCES",
    "AccuracyEstimate",
    "AccuracyMethod",
    "BalancedAccuracy",
    "BootstrapComparison",
    "CalibratedDifference",
    "CalibratedRate",
    "ComparisonMethod",
    "Interval",
    "ItemConsistency",
    "JudgeAgreement",
    "Known",
    "Level",
    "McNemarResult",
    "Outcome",
    "OutcomesByItem",
    "PairedComparison",
    "Proportion",
    "accuracy_estimate",
    "alignment_bias_interval",
    "balanced_accuracy_estimate",
    "cluster_bootstrap_interval",
    "cohen_kappa",
    "compare_paired",
    "holm_adjust",
    "item_consistency",
    "judge_vs_human",
    "kappa_interval",
    "krippendorff_alpha",
    "majority_label",
    "mcnemar_exact",
    "newcombe_paired_interval",
    "paired_bootstrap",
    "prediction_powered_difference",
    "prediction_powered_rate",
    "proportion",
    "roc_auc",
    "unclear_rate",
    "wilson_interval",
    "yes_rate",
]
