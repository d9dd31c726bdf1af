"""What Lazaret changes in Beam's local runners (and only there): spilling shuffles, bounded worker queues,
allocator settings. Flink, Spark, Dataflow and portable runs never load these patches."""
