"""The smallest samples a figure is shown for; below them the report says "too few to tell".

An interval from a handful of responses is either degenerate (every resample the same: "20%
[20%–20%]") or so wide that it says nothing, and a point estimate without one invites a flat
verdict. These minimums are deliberately low: above them every figure carries its interval.
"""

from typing import Final

#: Kappa and the judge-minus-people aligned-rate difference: responses decided by both.
MIN_DECIDED: Final = 10
#: A breakdown cell (accuracy within a group of items): items of the group with responses.
MIN_ITEMS: Final = 5
#: A calibrated (prediction-powered) estimate: labelled responses, on at least two items.
MIN_LABELLED: Final = 10

TOO_FEW = "too few to tell"
