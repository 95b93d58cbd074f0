#!/bin/bash
# deliver-loop.sh: runs one MDA once per corpus message and times the loop.
#
#   deliver-loop.sh CORPUS FIRST LAST CMD [ARG...]
#
# Runs CMD < CORPUS/msg-NNNNNN.eml for NNNNNN from FIRST to LAST, one
# process per message, as Postfix's mailbox_command would, and prints
# "START END FAILURES LAST_FAILED_STATUS" with START and END from the wall
# clock.  The loop is the same for every MDA, so its own cost (a fork per
# message) is the same on both sides.  Trusted input: the arguments, given
# by deliver.sh.

corpus=$1
first=$2
last=$3
shift 3
fail=0
status=0
start=$(date +%s.%N)
for ((i = first; i <= last; i++)); do
	printf -v f '%s/msg-%06d.eml' "$corpus" "$i"
	"$@" <"$f"
	rc=$?
	if [ "$rc" != 0 ]; then
		fail=$((fail + 1))
		status=$rc
	fi
done
end=$(date +%s.%N)
echo "$start $end $fail $status"
