"""Named baselines that run beside the model on the same timestamps (principle 7).

>>> from model.baselines import EWMA, HARRV
>>> sorted([EWMA.name, HARRV.name])
['ewma', 'har_rv']
"""

from model.baselines.ewma import EWMA
from model.baselines.har import HARRV, HARFit, HARPrior, fit_har, load_prior

__all__ = ["EWMA", "HARRV", "HARFit", "HARPrior", "fit_har", "load_prior"]
