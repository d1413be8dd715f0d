"""Evaluation in one place: the detector on labelled images, the product on labelled clips and trucks.

- :mod:`pipelines.evaluation.images`: per-class P, R, AP50 and AP50-95 (COCO-style) on YOLO datasets.
- :mod:`pipelines.evaluation.events`: events of labelled clips matched to the product's events.
- :mod:`pipelines.evaluation.loads`: the load-state evidence of real trucks.
- :mod:`pipelines.evaluation.score`: the ``evaluate`` commands' runs, reports and regression gate.
"""
