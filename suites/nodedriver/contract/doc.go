// Package contract holds the node agent protocol's contract test: every transport (the node
// lab's in-process agent, the kind driver's docker exec, the cluster driver's pod exec) runs
// the same table of cases against the same keys tree. It has no code of its own.
package contract
