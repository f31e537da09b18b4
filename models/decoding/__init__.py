"""Iteration-level decoding: a running set of rows that join and leave between decode steps (DESIGN.md §9).

`kv_slots` keeps every running row's keys and values in preallocated slot tensors behind transformers'
cache interface; `session` drives the rows (prefill, one step, finish, cancel) for any model that can
prefill a group of new rows and decode one token for every running row.
"""
