# Installs the coordinator node service as a Windows service on a Hyper-V host (run elevated).
#   .\install-windows-service.ps1 -BinaryPath C:\Program Files\HyperVCoordinator -SiteConfig C:\ProgramData\HyperVCoordinator\site.hocon
# The service restarts on failure: a node downed by the Split Brain Resolver exits non-zero and rejoins after restart.
param(
    [Parameter(Mandatory = $true)][string]$BinaryPath,
    [Parameter(Mandatory = $true)][string]$SiteConfig,
    [string]$ServiceName = "HyperVCoordinator",
    [string]$Account = "LocalSystem"
)
$ErrorActionPreference = "Stop"
$exe = Join-Path $BinaryPath "Coordinator.Service.exe"
if (-not (Test-Path $exe)) { throw "$exe not found (dotnet publish src/Coordinator.Service -c Release -r win-x64)" }
if (-not (Test-Path $SiteConfig)) { throw "$SiteConfig not found" }

New-Service -Name $ServiceName -DisplayName "Hyper-V cluster coordinator" `
    -BinaryPathName "`"$exe`" --config `"$SiteConfig`"" -StartupType Automatic `
    -Description "CSV disk ledger and image-fetch coordination for OpenStack compute nodes of a Hyper-V failover cluster"
# Restart after 2 s on every failure; reset the failure count after a day.
sc.exe failure $ServiceName reset= 86400 actions= restart/2000/restart/2000/restart/5000 | Out-Null
if ($Account -ne "LocalSystem") { sc.exe config $ServiceName obj= $Account | Out-Null }
Start-Service $ServiceName
Get-Service $ServiceName
