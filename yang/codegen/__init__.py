"""The pyang plugin that compiles the node model into `yang/model.py` (see pymodel.py)."""
