package static

// BinaryCopyable lets tests check which tables a copy sends in COPY's
// binary format.
var BinaryCopyable = binaryCopyable
