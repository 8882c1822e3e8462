# Behaves like twinbox-init waiting on a workload: reports "init started",
# then polls the boot-timer port until the host asks for a stop (it reads 1),
# reports exit code 143 (SIGTERM) and resets, as a gracefully stopped guest does.
    .code64
    .text
    .globl _start
_start:
    mov $0x440, %dx
    mov $1, %al
    out %al, %dx            # init started
poll:
    pause
    in %dx, %al
    cmp $1, %al
    jne poll
    mov $0x441, %dx
    mov $143, %al
    out %al, %dx            # exit code: 128 + SIGTERM
    mov $0x64, %dx
    mov $0xfe, %al
    out %al, %dx            # reset
park:
    hlt
    jmp park
