# Installs the coordinator node service as a Windows service on a Hyper-V host (run elevated, on every node).
#
#   .\install-windows-service.ps1 -BinaryPath "C:\Program Files\HyperVCoordinator" `
#       -SiteConfig C:\ProgramData\HyperVCoordinator\site.hocon -CsvFolders C:\ClusterStorage\Volume1
#
# The service does NOT run as LocalSystem. By default it runs under its virtual account NT SERVICE\HyperVCoordinator
# (no password; its SID, S-1-5-80-<hash of the service name>, is the same on every node, so one cluster ACL entry
# covers the whole cluster). On a domain, -Gmsa DOMAIN\coord$ runs it under a group Managed Service Account instead
# (needed when it must reach domain resources as itself: a PostgreSQL journal with Kerberos, SMB shares).
# What the account gets, and why (README "Security", "The Windows service"):
#   - Hyper-V Administrators (S-1-5-32-578): root\virtualization\v2 (create, change, start, stop VMs; read VHDs).
#   - Full access to the failover cluster (Grant-ClusterAccess): root\MSCluster and clusapi (add a VM role, move it,
#     remove it, read owners and notifications). -ClusterAccess Read is enough for a read-only trial.
#   - Modify on each CSV folder given (-CsvFolders): the image cache (_base) and the VMs' folders it creates.
#   - Modify on the data directory (journal, logs); Read on the site file; Read on secret files, whose inherited ACL
#     is removed so that only SYSTEM, Administrators and the service can open them.
#   - Read on the private key of its certificate when it comes from the certificate store (-CertificateThumbprint).
# The service restarts on failure: a node downed by the Split Brain Resolver exits 3 and rejoins after the restart;
# exit 4 (this node's journal belongs to another cluster) and 2 (invalid configuration) are logged to the event log.
param(
    [Parameter(Mandatory = $true)][string]$BinaryPath,
    [Parameter(Mandatory = $true)][string]$SiteConfig,
    [string]$ServiceName = "HyperVCoordinator",
    # A group Managed Service Account (DOMAIN\name$) instead of the virtual account.
    [string]$Gmsa = "",
    [string]$DataDirectory = "C:\ProgramData\HyperVCoordinator",
    # CSV roots (or folders on them) the service creates files in.
    [string[]]$CsvFolders = @(),
    # Files holding secrets (tokens, the journal's password, a certificate's password, PEM keys).
    [string[]]$SecretFiles = @(),
    # Thumbprint of the node certificate in LocalMachine\My, when coordinator.security.certificate.thumbprint is used.
    [string]$CertificateThumbprint = "",
    [ValidateSet("Full", "Read", "None")][string]$ClusterAccess = "Full",
    # Open the Akka port (cluster network) and, when the API is bound beyond loopback, the HTTPS port.
    [int]$AkkaPort = 4053,
    [int]$HttpsPort = 0
)
$ErrorActionPreference = "Stop"
$exe = Join-Path $BinaryPath "Coordinator.Service.exe"
if (-not (Test-Path $exe)) { throw "$exe not found (dotnet publish src/Coordinator.Service -c Release -r win-x64)" }
if (-not (Test-Path $SiteConfig)) { throw "$SiteConfig not found" }
$account = if ($Gmsa) { $Gmsa } else { "NT SERVICE\$ServiceName" }

if (-not (Get-Service $ServiceName -ErrorAction SilentlyContinue)) {
    New-Service -Name $ServiceName -DisplayName "Hyper-V cluster coordinator" `
        -BinaryPathName "`"$exe`" --config `"$SiteConfig`"" -StartupType Automatic `
        -Description "CSV disk ledger and image-fetch coordination for OpenStack compute nodes of a Hyper-V failover cluster" | Out-Null
}
# The service SID is what ACLs name; "unrestricted" gives the process a token that carries it.
sc.exe sidtype $ServiceName unrestricted | Out-Null
if ($Gmsa) {
    if (-not (Test-ADServiceAccount -Identity ($Gmsa.Split('\')[-1].TrimEnd('$')))) { throw "this host may not use the gMSA $Gmsa (PrincipalsAllowedToRetrieveManagedPassword)" }
    sc.exe config $ServiceName obj= $Gmsa password= "" | Out-Null
} else {
    sc.exe config $ServiceName obj= $account | Out-Null
}
# Restart after 2 s on every failure; reset the failure count after a day.
sc.exe failure $ServiceName reset= 86400 actions= restart/2000/restart/2000/restart/5000 | Out-Null

# Hyper-V Administrators by SID (the group's name is localised).
$hyperVAdmins = (New-Object System.Security.Principal.SecurityIdentifier("S-1-5-32-578")).Translate([System.Security.Principal.NTAccount]).Value
if (-not (Get-LocalGroupMember -SID "S-1-5-32-578" -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $account })) {
    Add-LocalGroupMember -SID "S-1-5-32-578" -Member $account
}
Write-Host "$account is a member of $hyperVAdmins"

if ($ClusterAccess -ne "None") {
    Import-Module FailoverClusters
    if ($ClusterAccess -eq "Full") { Grant-ClusterAccess -User $account -Full | Out-Null } else { Grant-ClusterAccess -User $account -ReadOnly | Out-Null }
    Write-Host "$account has $ClusterAccess access to cluster $((Get-Cluster).Name)"
}

function Grant([string]$path, [string]$rights) {
    if (-not (Test-Path $path)) { New-Item -ItemType Directory -Path $path -Force | Out-Null }
    icacls $path /grant "${account}:(OI)(CI)$rights" /T /C /Q | Out-Null
    Write-Host "${account}: $rights on $path"
}
Grant $DataDirectory "M"
foreach ($csv in $CsvFolders) { Grant $csv "M" }
icacls $SiteConfig /grant "${account}:R" /Q | Out-Null

# Secret files: no inherited entries; SYSTEM and Administrators full, the service read. Nobody else.
foreach ($secret in $SecretFiles) {
    if (-not (Test-Path $secret)) { throw "secret file $secret not found" }
    icacls $secret /inheritance:r /grant:r "*S-1-5-18:F" "*S-1-5-32-544:F" "${account}:R" /Q | Out-Null
    Write-Host "secret $secret readable by SYSTEM, Administrators and $account only"
}

if ($CertificateThumbprint) {
    $cert = Get-Item "Cert:\LocalMachine\My\$CertificateThumbprint"
    if (-not $cert.HasPrivateKey) { throw "certificate $CertificateThumbprint has no private key" }
    $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($cert)
    if (-not $key) { $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($cert) }
    $keyFile = Get-ChildItem "$env:ProgramData\Microsoft\Crypto\Keys", "$env:ProgramData\Microsoft\Crypto\RSA\MachineKeys" -Recurse |
        Where-Object { $_.Name -eq $key.Key.UniqueName } | Select-Object -First 1
    if (-not $keyFile) { throw "the private key file of $CertificateThumbprint was not found" }
    icacls $keyFile.FullName /grant "${account}:R" /Q | Out-Null
    Write-Host "${account} may read the private key of $($cert.Subject)"
}

# Remoting listens on the cluster network only (the site file's akka.remote.dot-netty.tcp.hostname).
New-NetFirewallRule -DisplayName "Hyper-V coordinator (cluster, mutual TLS)" -Direction Inbound -Protocol TCP `
    -LocalPort $AkkaPort -Program $exe -Action Allow -ErrorAction SilentlyContinue | Out-Null
if ($HttpsPort -gt 0) {
    New-NetFirewallRule -DisplayName "Hyper-V coordinator (HTTPS API)" -Direction Inbound -Protocol TCP `
        -LocalPort $HttpsPort -Program $exe -Action Allow -ErrorAction SilentlyContinue | Out-Null
}

Start-Service $ServiceName
Get-CimInstance Win32_Service -Filter "Name='$ServiceName'" | Select-Object Name, State, StartName
