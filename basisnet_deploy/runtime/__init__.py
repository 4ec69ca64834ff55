"""Stage 4, running an export without TensorFlow: sessions, backends and delegates, runner."""
