#!/bin/sh
# The app: one page, as the course's Flask "hello" route returns one.
echo "Content-Type: text/plain"
echo ""
echo "${GREETING:-Hello}"
echo "served by $(hostname), kernel $(uname -r)"
