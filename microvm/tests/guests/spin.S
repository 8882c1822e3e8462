# Never reaches an init: spins forever, so the boot timeout must end it.
    .code64
    .text
    .globl _start
_start:
    pause
    jmp _start
