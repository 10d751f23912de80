package window

import "github.com/bombwatch/bombwatch/internal/paged"

// pages hold the windows' tables by key index (see paged).
type pages[T any] = paged.Slice[T]
