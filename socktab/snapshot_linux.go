package socktab

import (
	"context"
	"errors"
)

func snapshot(ctx context.Context, q Query) (*Table, error) {
	return nil, errors.New("socktab: not implemented yet")
}
