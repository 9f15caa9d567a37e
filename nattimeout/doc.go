// Package nattimeout measures how long the middleboxes on a path (NATs, stateful firewalls,
// load balancers) keep an idle TCP connection, in each direction separately, and whether they
// count TCP keepalive probes as activity.
//
// The far end runs a Server; the near end calls Measure. Measure opens test connections
// through the path, lets them idle for chosen durations and then checks whether one small
// message still passes: client→server (the client writes after the idle time) and
// server→client (the client asks the server, over a separate control connection that is kept
// busy, to write on the idle test connection). A check that fails tells how the middlebox
// forgot the flow: silently (the message vanishes), with an RST, or by closing the
// connection itself (FIN).
//
// The search is adaptive (see Searcher): half the test connections open at the start, the
// others at staggered times after them; the ladder checks, each time one is old enough, the
// youngest connection idle for a rung (a fixed ratio above the longest idle that passed), and
// every connection that passes starts idling again, so the ladder climbs with a bounded number
// of connections and leaves connections of many idle ages behind it. When a rung fails, every
// connection whose idle age lies inside the bracket is checked at once, then the bracket is
// bisected by checking the connection closest below its middle as soon as it gets there, and
// a last check above the bracket confirms it. The wall time stays close to the timeout
// itself instead of a fixed schedule.
//
// The result feeds keepalive.Recommend when the path counts keepalive probes as activity;
// when it does not, only application heartbeats keep the flow (see HeartbeatAdvice).
//
// The wire protocol uses fixed 32-byte frames (see Frame). The server sends only to
// clients that presented the token, at most two frames per frame received (a trigger yields
// the ping it asks for and its result, with at most one outstanding per connection), and
// enforces per-client and total connection caps and an idle cap.
package nattimeout
