"""Scores of label-propagation results, equal to the benchmarks' own evaluators.

tasks          evaluate(task, data_root, results_dir) and the printed tables ('smae evaluate')
folders_evaluate  J&F of any GT / results folders, DAVIS's or vos-benchmark's semantics
davis_*        DAVIS-2017 J&F as davis2017-evaluation, vectorised over objects, parallel over sequences
jhmdb_metrics  JHMDB PCK@0.1 / 0.2 as videowalk's eval_pck.py
vip_metrics    VIP mIoU over 20 part classes
The data sets' folder layouts are read with smae.layouts.
"""
