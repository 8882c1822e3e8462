# Every vCPU runs this. Each reads its APIC id and the CPU count from CPUID
# leaf 1 (as the VMM filtered it), counts itself in a shared word, and parks;
# the boot processor waits until all have checked in, prints "cpus=N ids=..."
# (the ids in arrival order), reports N as the exit code and resets.
    .code64
    .text
    .globl _start
_start:
    mov $1, %eax
    cpuid
    mov %ebx, %ecx
    shr $24, %ebx               # APIC id
    shr $16, %ecx
    and $0xff, %ecx             # logical CPU count
    mov $1, %eax
    lock xadd %eax, arrived(%rip)
    lea ids(%rip), %rdi
    mov %bl, (%rdi,%rax)        # record this id in slot `arrival order`
    test %ebx, %ebx
    jnz park
wait_all:
    pause
    cmp arrived(%rip), %ecx
    jne wait_all
    mov $0x3f8, %dx
    lea prefix(%rip), %rsi
print_prefix:
    lodsb
    test %al, %al
    jz print_count
    out %al, %dx
    jmp print_prefix
print_count:
    mov %cl, %al
    add $'0', %al
    out %al, %dx
    lea ids_label(%rip), %rsi
print_label:
    lodsb
    test %al, %al
    jz print_ids
    out %al, %dx
    jmp print_label
print_ids:
    lea ids(%rip), %rsi
    mov %ecx, %r8d
print_id:
    lodsb
    add $'0', %al
    out %al, %dx
    dec %r8d
    jnz print_id
    mov $'\n', %al
    out %al, %dx
    mov $0x441, %dx
    mov %cl, %al
    out %al, %dx                # exit code = CPU count
    mov $0x64, %dx
    mov $0xfe, %al
    out %al, %dx
park:
    hlt
    jmp park
prefix:
    .asciz "cpus="
ids_label:
    .asciz " ids="
    .balign 4
arrived:
    .long 0
ids:
    .space 32
