"""Scenarios run by `qkdsdn lab run`: each names a topology, application pairs and options."""
