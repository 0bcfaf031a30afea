"""What the app host's dashboard shows: bounded per-resource buffers of console output and of the
OpenTelemetry data (spans, log records, metric points) that services send to its OTLP receiver.

App-host side only; it imports nothing of orchestration, runtimes or the CLI.
"""
