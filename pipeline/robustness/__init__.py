"""The robustness study (FuseBench issue 17): downstream value of fusion under perturbations.

* :mod:`.models` -- locate and load the detectors / segmenters the downstream stages trained;
* :mod:`.evaluate` -- apply a trained model to any set of images (the stages' own evaluation);
* :mod:`.stage` -- stage ``robustness``: every method's models on its fusion of the perturbed test
  pairs (fusion + inference only, cost measured);
* :mod:`.frozen` -- the frozen-evaluator protocol (stage ``frozen`` trains; applied in ``robustness``).
"""
