package app

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatewire/gatewire/internal/metrics"
)

// redisMetrics is a go-redis hook observing every command's and
// pipeline's latency in metrics.RedisOps, commands by the lower-case name
// go-redis gives them.
type redisMetrics struct{}

func (redisMetrics) DialHook(next redis.DialHook) redis.DialHook { return next }

func (redisMetrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		metrics.Since(metrics.RedisOps.WithLabelValues(cmd.Name(), metrics.Result(redisFailure(err))), start)
		return err
	}
}

func (redisMetrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		metrics.Since(metrics.RedisOps.WithLabelValues("pipeline", metrics.Result(redisFailure(err))), start)
		return err
	}
}

// redisFailure drops redis.Nil, which is an answer, not a failure.
func redisFailure(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

var _ redis.Hook = redisMetrics{}
