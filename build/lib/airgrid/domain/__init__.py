"""Pure domain logic of airgrid (AQI maths, routing, task rules): no Faust, no Kafka, no I/O."""
