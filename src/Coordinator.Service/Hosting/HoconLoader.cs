using Akka.Configuration;

namespace Coordinator.Service.Hosting;

/// <summary>Reads hocon/coordinator.hocon (shipped beside the binary) and layers the site file over it.</summary>
public static class HoconLoader
{
    public const string DefaultsFileName = "coordinator.hocon";

    public static Config Load(string? siteFile)
    {
        var defaultsPath = Path.Combine(AppContext.BaseDirectory, DefaultsFileName);
        if (!File.Exists(defaultsPath))
            throw new FileNotFoundException($"the default configuration {defaultsPath} is missing from the installation");
        var config = ConfigurationFactory.ParseString(File.ReadAllText(defaultsPath));
        if (!string.IsNullOrWhiteSpace(siteFile))
        {
            if (!File.Exists(siteFile)) throw new FileNotFoundException($"--config: {siteFile} does not exist");
            config = ConfigurationFactory.ParseString(File.ReadAllText(siteFile)).WithFallback(config);
        }
        return config;
    }
}
