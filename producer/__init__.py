"""Sources of trades into Kafka: file replay now; the live Binance WebSocket source comes next."""
