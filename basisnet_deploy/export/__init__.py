"""Stage 3, checkpoint to verified artifacts: export orchestration, verification, Android assets."""
