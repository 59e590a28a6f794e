"""Telling the world what happened (issue 18): a notifier reads the event feed through a
Redis consumer group and delivers each event that matters to the channels configured for its
app (`notify:`) — webhooks, Kudu's PostDeployment hooks, chat, commit statuses — at least once,
in order per app, acknowledging an event only once every channel had it or gave up."""
