"""The real Kafka broker the project runs on: jars from Maven Central, a local
KRaft node, health checks, and the choice between env, local and containers."""
