-- Dead letters per stage and reason kind (the reason up to its first colon).
SELECT
    stage,
    splitByChar(':', reason)[1] AS reason_kind,
    count()                     AS messages
FROM dead_letters FINAL
GROUP BY stage, reason_kind
ORDER BY messages DESC, reason_kind
