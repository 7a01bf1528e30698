"""Web messaging: the daily archive of web messaging transcripts (seed 002), its checks and warehouse audit."""
